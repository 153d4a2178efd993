"""Carbon intensity: policy (intensity), codecarbon's bundled tables, hourly series, time zones, equivalents."""
