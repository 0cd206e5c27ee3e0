"""Fixed paths and names shared by every RVA service."""

from pathlib import Path

CONFIG_PATH = Path("/etc/rva/rva.toml")
STATE_DIR = Path("/var/lib/rva")
RUNTIME_DIR = Path("/run/rva")
MODEL_CACHE = STATE_DIR / "models"

ENV_CONFIG = "RVA_CONFIG"
ENV_REDIS_URL = "RVA_REDIS_URL"
ENV_MODEL_CACHE = "RVA_MODEL_CACHE"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GROUP = "rva-gears"
DEFAULT_MODEL = "yolov3-tiny"
DEFAULT_GEAR = "people_counter"

# The plugin names a config may use, declared here so that checking a config file imports no
# plugin package (rva.gears and rva.models.backends import the config: reading the names from
# their registries made an import circle). Adding a gear or a backend adds its name here;
# tests/test_layout.py fails when a registry and these lists disagree.
GEAR_TYPES = ("people_counter",)
BACKENDS = ("onnxruntime", "opencv", "tensorrt")
# Written but not yet run on the hardware they are for: `auto` never chooses them and
# `rva config check` warns when gear.backend names one (rva.checks.gear).
EXPERIMENTAL_BACKENDS = ("tensorrt",)
