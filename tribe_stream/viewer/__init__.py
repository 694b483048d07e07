"""Pictures of the cortex: the live vispy window, offscreen stills and movies."""
