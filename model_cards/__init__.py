"""Model card templates (Jinja, one per family), shipped inside hubgen as `hubgen.model_cards`."""
