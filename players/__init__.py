"""The player pages and the live dashboard, shipped as package data next to this file.

``origin.players`` serves them. The pinned hls.js / dash.js builds are found
through ``libs.json``: in ``vendor/`` (copied there by ``scripts/build`` for a
wheel) or in ``node_modules/`` (installed by ``scripts/setup`` in a checkout).
"""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
