"""Flask blueprints: HTTP only. Each view parses, calls the domain once, and renders."""
