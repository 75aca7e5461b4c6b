-- Owners can fetch their own images from Supabase Storage (issue 15 item 2). The worker
-- uploads with the service key, so storage.objects.owner is NULL on every object and
-- Supabase's default "owner = auth.uid()" style policies never match: an owner's JWT got
-- NoSuchKey on download and on signing. This policy lets `authenticated` read (SELECT, which
-- download, createSignedUrl and list need) an object of the imagen-generated bucket when an
-- imagen.images row they own points at it. The subquery runs with the caller's rights, so
-- imagen.images' own RLS (images_select_own) applies as well.
--
-- Only where storage.objects exists (a Supabase project); vanilla Postgres skips it. A
-- project that gets Storage later re-creates the policy by hand (docs/storage.md).

DO $storage$
BEGIN
    IF to_regclass('storage.objects') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_policies
                       WHERE schemaname = 'storage' AND tablename = 'objects'
                         AND policyname = 'imagen_owner_reads_generated') THEN
        EXECUTE $policy$
            CREATE POLICY imagen_owner_reads_generated ON storage.objects
                FOR SELECT TO authenticated
                USING (
                    bucket_id = 'imagen-generated'
                    AND EXISTS (SELECT 1 FROM imagen.images i
                                WHERE i.bucket = objects.bucket_id
                                  AND i.storage_path = objects.name
                                  AND i.owner_user_id = auth.uid())
                )
        $policy$;
    END IF;
END
$storage$;
