"""Carbon intensity: policy (intensity), codecarbon's bundled tables, hourly series, time zones, equivalents.

Importing this package imports none of its modules. :func:`co2_kg` is the one formula of
:mod:`tracker.energy`, named here too so that ``tracker.carbon.co2_kg`` keeps working.
"""

from tracker.energy import co2_kg as co2_kg
