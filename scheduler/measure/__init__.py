"""Where measurements are taken: asv runs and their result files, git, the side-by-side
runner, the idle-machine check. Translates asv's files into :mod:`scheduler.results`."""
