"""Static checks: template, state machine definition, lint, types, sample events."""
