from __future__ import annotations

from imagen_actors.cli.main import main

raise SystemExit(main())
