"""One tracking session: options, timeline of readings, epochs and phases, rows, totals, the EnergyTracker."""
