"""Code shared by the three niiza-ai services: settings, storage, text, auth, audit, errors."""
