"""WSGI entry point: ``app`` for any WSGI server; ``python wsgi.py`` serves with waitress."""

if __name__ == "__main__":
    from phase_lite.serve import main

    main()
else:
    from phase_lite.app import create_app

    app = create_app()
