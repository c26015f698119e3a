"""The built-in device kinds, one file each (see `cosearch.hardware.profiles`)."""

from cosearch.hardware.devices.analytic import AnalyticDevice
from cosearch.hardware.devices.lut import LutDevice
from cosearch.hardware.devices.measured import MeasuredDevice

__all__ = ["AnalyticDevice", "LutDevice", "MeasuredDevice"]
