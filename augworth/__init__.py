"""augworth: how much data an augmentation is worth, measured by sweeps on Ray (Geiping et al., ICLR 2023).

The one name augworth adds to an environment's top level. Its five packages live at the top of the repository
and are installed under this one (the folders here are links to them; the wheel holds plain copies):

    augworth.search_spaces <- augworth.results <- augworth.trainables <- augworth.orchestrator
                              augworth.results <- augworth.analysis   <- augworth.orchestrator

Importing `augworth` loads nothing else: each package loads on its own import.
"""
