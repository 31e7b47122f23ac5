"""echolite: ejection-fraction regression on echocardiogram videos, compressed and measured.

Importing the package does no I/O and imports nothing heavy; submodules are imported on use.
"""

__version__ = "0.1.0"


class EcholiteError(Exception):
    """An error the user can fix; the CLI prints its message as one line, without a traceback."""
