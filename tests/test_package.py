"The package's metadata agrees with settings.ini, the one place it is written."
from configparser import ConfigParser
from pathlib import Path
import fastfound

root = Path(__file__).resolve().parent.parent

def test_version_matches_settings():
    cfg = ConfigParser(); cfg.read(root/'settings.ini')
    assert fastfound.__version__ == cfg['DEFAULT']['version']
