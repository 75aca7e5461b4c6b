"""Our migrations on a database shaped like a Supabase project (issue 15 items 2 and 3).

Before the migrations run, the test creates what Supabase has there already: the API roles
(NOLOGIN, as Supabase's init scripts create them), an `auth` schema owned by another role
with `auth.uid()` exactly as supabase/auth defines it now, `auth.users`, and a minimal
`storage.objects` with RLS on. Then it proves 0001 leaves Supabase's objects alone, RLS holds
for both ways PostgREST passes the JWT, and 0012's storage policy lets an owner read their
own object rows and no one else's.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import trio

from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import discover, migrate
from imagen_actors.db.sql import query
from tests.support.jobs import OTHER_OWNER, OWNER
from tests.support.pg import Cluster, admin

pytestmark = pytest.mark.db

# supabase/auth migration 20220224000811_update_auth_functions.up.sql, verbatim.
SUPABASE_UID = """
create or replace function auth.uid()
returns uuid
language sql stable
as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
"""

# supabase/postgres init scripts: the API roles (cluster-wide, so only where missing here).
SUPABASE_ROLES = """
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END
$roles$;
"""

UID_FINGERPRINT = (
    "SELECT p.oid::int AS oid, p.prosrc, pg_get_userbyid(p.proowner) AS owner, p.proacl::text "
    "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE n.nspname = 'auth' AND p.proname = 'uid'"
)

BUCKET = "imagen-generated"


def sql(dsn: str, statement: str, *args: Any) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(r) for r in await conn.fetch(statement, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())


def as_user(dsn: str, claim_form: str, user: uuid.UUID, statement: str, *args: Any) -> Any:
    """Run as `authenticated` with the JWT subject passed the way PostgREST does: the legacy
    per-claim setting, or the JSON claims setting."""

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                if claim_form == "claim.sub":
                    await conn.execute(
                        "SELECT set_config('request.jwt.claim.sub', $1, true)", str(user)
                    )
                else:
                    claims = json.dumps({"sub": str(user), "role": "authenticated"})
                    await conn.execute("SELECT set_config('request.jwt.claims', $1, true)", claims)
                await conn.execute("SET LOCAL ROLE authenticated")
                return [dict(r) for r in await conn.fetch(statement, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())


class SupabaseShaped:
    def __init__(self, dsn: str, uid_before: dict[str, Any]) -> None:
        self.dsn = dsn
        self.uid_before = uid_before


def shape_like_supabase(dsn: str, owner: str) -> None:
    """What a Supabase project has before our migrations: auth owned by ``owner`` (Supabase's
    supabase_auth_admin), storage by ``owner``_storage (supabase_storage_admin)."""
    admin(
        dsn,
        SUPABASE_ROLES,
        f"CREATE SCHEMA auth AUTHORIZATION {owner}",
        SUPABASE_UID,
        f"ALTER FUNCTION auth.uid() OWNER TO {owner}",
        "CREATE TABLE auth.users (id uuid PRIMARY KEY, email text)",
        f"ALTER TABLE auth.users OWNER TO {owner}",
        "GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role",
        f"CREATE SCHEMA storage AUTHORIZATION {owner}_storage",
        "CREATE TABLE storage.objects (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
        "bucket_id text, name text, owner uuid)",
        f"ALTER TABLE storage.objects OWNER TO {owner}_storage",
        "ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY",
        "GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role",
        "GRANT ALL ON storage.objects TO anon, authenticated, service_role",
    )


@contextmanager
def supabase_shaped_database(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """(dsn, auth's owner role) of a fresh Supabase-shaped database (storage's owner is that
    name + "_storage"); all dropped after."""
    owner = f"imagen_t_supabase_admin_{uuid.uuid4().hex[:8]}"
    name, dsn = cluster.empty_database()
    admin(cluster.admin_dsn, f"CREATE ROLE {owner} NOLOGIN", f"CREATE ROLE {owner}_storage NOLOGIN")
    try:
        shape_like_supabase(dsn, owner)
        yield dsn, owner
    finally:
        cluster.drop(name)
        admin(
            cluster.admin_dsn,
            f"DROP ROLE IF EXISTS {owner}",
            f"DROP ROLE IF EXISTS {owner}_storage",
        )


@pytest.fixture
def supabase_db(pg_cluster: Cluster) -> Iterator[SupabaseShaped]:
    with supabase_shaped_database(pg_cluster) as (dsn, _owner):
        (before,) = sql(dsn, UID_FINGERPRINT)

        async def run() -> None:
            async with Gateway.open(dsn) as gw:
                await migrate(gw)

        trio.run(run)
        yield SupabaseShaped(dsn, before)


def test_0001_leaves_supabase_auth_untouched(supabase_db: SupabaseShaped) -> None:
    """Same auth.uid() (OID, body, owner, ACL); the API roles are NOLOGIN as Supabase has."""
    (after,) = sql(supabase_db.dsn, UID_FINGERPRINT)
    assert after == supabase_db.uid_before
    assert "request.jwt.claim.sub" in after["prosrc"]
    roles = sql(
        supabase_db.dsn,
        "SELECT rolname, rolcanlogin, rolinherit, rolbypassrls FROM pg_roles "
        "WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY rolname",
    )
    assert roles == [
        {"rolname": "anon", "rolcanlogin": False, "rolinherit": False, "rolbypassrls": False},
        {
            "rolname": "authenticated",
            "rolcanlogin": False,
            "rolinherit": False,
            "rolbypassrls": False,
        },
        {
            "rolname": "service_role",
            "rolcanlogin": False,
            "rolinherit": False,
            "rolbypassrls": True,
        },
    ]
    (schema,) = sql(
        supabase_db.dsn,
        "SELECT pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = 'auth'",
    )
    assert schema["owner"].startswith("imagen_t_supabase_admin_")
    (granted,) = sql(
        supabase_db.dsn,
        "SELECT has_schema_privilege('authenticated', 'auth', 'USAGE') AS authenticated, "
        "has_schema_privilege('anon', 'auth', 'USAGE') AS anon",
    )
    assert granted == {"authenticated": True, "anon": True}


@pytest.mark.parametrize("claim_form", ["claim.sub", "claims"])
def test_rls_holds_for_both_claim_forms(supabase_db: SupabaseShaped, claim_form: str) -> None:
    """Each owner inserts and sees only their own jobs and events, whichever setting carries
    the JWT subject; an insert for someone else is refused."""
    insert = (
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
        "VALUES ($1, 'owl', 'mock', 64, 64) RETURNING id"
    )
    (mine,) = as_user(supabase_db.dsn, claim_form, OWNER, insert, OWNER)
    (theirs,) = as_user(supabase_db.dsn, claim_form, OTHER_OWNER, insert, OTHER_OWNER)
    assert as_user(supabase_db.dsn, claim_form, OWNER, "SELECT id FROM imagen.jobs") == [mine]
    assert as_user(supabase_db.dsn, claim_form, OTHER_OWNER, "SELECT id FROM imagen.jobs") == [
        theirs
    ]
    events = as_user(supabase_db.dsn, claim_form, OWNER, "SELECT job_id FROM imagen.job_events")
    assert events == [{"job_id": mine["id"]}]
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        as_user(supabase_db.dsn, claim_form, OWNER, insert, OTHER_OWNER)


def seed_objects(dsn: str) -> dict[str, uuid.UUID]:
    """An image row and its object for each owner, plus an object no image row points at."""
    keys = {"mine": "2026-12-01/owl-1.png", "theirs": "2026-12-01/owl-2.png"}
    for who, owner in (("mine", OWNER), ("theirs", OTHER_OWNER)):
        (job,) = sql(
            dsn,
            "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
            "VALUES ($1, 'owl', 'mock', 64, 64) RETURNING id",
            owner,
        )
        sql(
            dsn,
            "INSERT INTO imagen.images (owner_user_id, job_id, prompt, backend, width, height, "
            "bucket, storage_path, bytes, sha256) VALUES ($1, $2, 'owl', 'mock', 64, 64, $3, $4, "
            "1, repeat('a', 64))",
            owner,
            job["id"],
            BUCKET,
            keys[who],
        )
    ids: dict[str, uuid.UUID] = {}
    for who, bucket, key in (
        ("mine", BUCKET, keys["mine"]),
        ("theirs", BUCKET, keys["theirs"]),
        ("orphan", BUCKET, "2026-12-01/nobody.png"),
        ("elsewhere", "avatars", keys["mine"]),  # same name, another bucket
    ):
        # Uploaded with the service key: Supabase leaves owner NULL.
        (row,) = sql(
            dsn,
            "INSERT INTO storage.objects (bucket_id, name, owner) VALUES ($1, $2, NULL) "
            "RETURNING id",
            bucket,
            key,
        )
        ids[who] = row["id"]
    return ids


@pytest.mark.parametrize("claim_form", ["claim.sub", "claims"])
def test_owner_reads_only_their_own_objects(supabase_db: SupabaseShaped, claim_form: str) -> None:
    """0012: an owner's JWT sees the storage.objects row of their image (so download and
    createSignedUrl work), not another owner's, not an orphan, not another bucket's."""
    ids = seed_objects(supabase_db.dsn)
    query = "SELECT id FROM storage.objects ORDER BY name"
    assert as_user(supabase_db.dsn, claim_form, OWNER, query) == [{"id": ids["mine"]}]
    assert as_user(supabase_db.dsn, claim_form, OTHER_OWNER, query) == [{"id": ids["theirs"]}]
    stranger = uuid.UUID("33333333-3333-4333-8333-333333333333")
    assert as_user(supabase_db.dsn, claim_form, stranger, query) == []


def test_storage_policy_is_for_authenticated_select_only(supabase_db: SupabaseShaped) -> None:
    """The shipped policy reads; it grants no write and nothing to anon."""
    policies = sql(
        supabase_db.dsn,
        "SELECT policyname, cmd, roles::text[] AS roles FROM pg_policies "
        "WHERE schemaname = 'storage' AND tablename = 'objects'",
    )
    assert policies == [
        {"policyname": "imagen_owner_reads_generated", "cmd": "SELECT", "roles": ["authenticated"]}
    ]


def test_migrating_as_a_non_superuser_warns_only_for_0001s_auth_grant(pg_cluster: Cluster) -> None:
    """Migrating like Supabase's `postgres` (no superuser; CREATE on the database; USAGE on
    auth but no grant option; a member of the role owning storage): every file applies, and
    the one server warning is 0001's `GRANT USAGE ON SCHEMA auth`, a no-op there because
    Supabase granted that usage already. 0001 is released and cannot change
    (docs/decisions.md)."""
    migrator = f"imagen_t_migrator_{uuid.uuid4().hex[:8]}"
    try:
        with supabase_shaped_database(pg_cluster) as (dsn, owner):
            admin(
                pg_cluster.admin_dsn,
                f"CREATE ROLE {migrator} NOLOGIN NOSUPERUSER IN ROLE {owner}_storage",
                f"GRANT CREATE ON DATABASE {urlsplit(dsn).path.lstrip('/')} TO {migrator}",
            )
            admin(dsn, f"GRANT USAGE ON SCHEMA auth TO {migrator}")
            warnings = apply_files_as(dsn, migrator)
    finally:
        # What it owns went with the database.
        admin(pg_cluster.admin_dsn, f"DROP ROLE IF EXISTS {migrator}")
    assert warnings == [("0001_compat_supabase.sql", 'no privileges were granted for "auth"')]


def apply_files_as(dsn: str, role: str) -> list[tuple[str, str]]:
    """Apply every schema file in order as ``role``; the server's WARNINGs, by file."""
    seen: list[tuple[str, str]] = []
    current = [""]

    def listener(_conn: object, message: Any) -> None:
        if message.severity_en == "WARNING" or message.severity == "WARNING":
            seen.append((current[0], message.message))

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            conn.add_log_listener(listener)
            await conn.execute(f"SET ROLE {role}")
            current[0] = "(runner)"
            await conn.execute(query("migrations_table"))
            for migration in discover():
                current[0] = migration.name
                async with conn.transaction():
                    await conn.execute(migration.sql)
                await asyncio.sleep(0)  # let the listener calls for this file run
            policies = await conn.fetchval(
                "SELECT count(*) FROM pg_policies WHERE policyname = 'imagen_owner_reads_generated'"
            )
            assert policies == 1
        finally:
            await conn.close()

    asyncio.run(go())
    return seen
