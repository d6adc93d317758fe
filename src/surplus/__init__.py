"""surplus: a self-hosted home energy manager that charges cars from solar surplus."""

__version__ = "0.1.0"
