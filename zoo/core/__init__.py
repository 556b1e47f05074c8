"""The bottom layer, used by every other: our errors, the version, argument checks, the environment, atomic files,
progress bars, the machine, PNG figures and the console rules. It imports nothing of zoo above it."""
