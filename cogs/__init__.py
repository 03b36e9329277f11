"""Discord extensions, one per feature. Thin: parse the interaction, call bot/, render."""
