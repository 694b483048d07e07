"""Live streaming: clock, windows, scheduler, pipeline."""
