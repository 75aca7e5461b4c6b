"""Object storage for finished images: ``local`` (a directory) and ``supabase``."""
