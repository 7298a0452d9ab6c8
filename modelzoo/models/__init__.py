"""Model builders, one module per case study; importing this registers them all."""

from modelzoo.models import galaxy, lhc  # noqa: F401
