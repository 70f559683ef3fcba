"""The web console: server-rendered pages over the same domain functions as the API.

``web`` holds the plumbing (blueprint, sessions, CSRF, headers), ``actions`` every call into the
domain layer, ``sessions`` the sign-in rules (no Flask), and ``sign_in``, ``secrets_pages``,
``access_pages`` and ``lockbox_pages`` the pages.
"""
