"""Checks at the edge of every call: the value validators (``values``), settings declared once
(``settings``) and optional packages (``extras``). Imports nothing from minissl; the core reaches
them through ``backend`` (``B.check_int``, ...)."""
from .extras import MissingExtra, require
from .settings import check_settings, setting, setting_type
from .values import (MAX_SHOWN, SOURCE_METHODS, check_bool, check_choice, check_int,
                     check_real, check_source, format_number, shown)
