"""ganlib: the library behind the GAN course.

One module per concept (see the README for the map): `data`, `losses`, `layers`, `models`, `train`,
`metrics`, `viz`; the course's tools (checks, presets, grader, benchmarks) are `gancourse`, which ganlib never
imports. Notebooks start with ``env = ganlib.setup()``.
"""

__version__ = "0.1.0"

from .env import setup  # noqa: E402
from .errors import GanlibError  # noqa: E402

__all__ = ["setup", "GanlibError", "__version__"]
