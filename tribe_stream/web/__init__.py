"""The cortex in a browser: `tribe-stream web` serves a page that shows a stream live (plain
WebGL 2, no build step) and, with `--capture`, runs the pipeline on the browser's own camera and
microphone. See docs/WEB.md."""
