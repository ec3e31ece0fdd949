"""The weekly access review: the week's facts gathered from the store, findings, renderings."""
