"""The Flotilla hub process: spec, store, engine, rollouts, status, HTTP API and CLI."""
