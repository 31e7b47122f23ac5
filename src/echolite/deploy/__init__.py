"""From a run to the bedside: ``echolite predict`` and ``echolite export`` (a torch-free bundle).

:mod:`echolite.deploy.runner` is torch-free (an export bundle carries it); :mod:`echolite.deploy.predict`
and :mod:`echolite.deploy.bundle` open a run's saved variants and write bundles. Importing this
package imports nothing.
"""
