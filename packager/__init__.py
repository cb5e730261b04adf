"""Live media packager: source -> ABR ladder -> CMAF -> HLS / LL-HLS / DASH / LL-DASH."""

__version__ = "0.1.0"
