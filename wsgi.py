"""WSGI entry point: ``app`` for any WSGI server; ``python wsgi.py`` serves with waitress."""

from phase_lite.app import create_app
from phase_lite.cli import serve_app

app = create_app()

if __name__ == "__main__":
    serve_app(app)
