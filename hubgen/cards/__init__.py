"""Card partials shared by every family's template (each family keeps its own template, card.md, in its folder)."""
