"""The Flotilla hub process, as a house of layered parts (see ARCHITECTURE.md): the
Application format, placement's results turned into revisions, the workflow engine and
canaries, the fleet's watch caches, the store, the HTTP API and the CLI."""
