"""Where the tests find the benchmark data mirror: $HARNESS_DATA_DIR, else ../shared/data beside the repository."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or REPO.parent / "shared" / "data")
