"""Training: the recipes as data (recipes), the loop with exact resume and evaluation (loop), and a finished run
made a bundled, pinned tag (release). Above zoo.hub."""
