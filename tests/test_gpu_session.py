"""benchmarks/gpu_session.sh: the prepared GPU script parses and refuses a part it does not know."""
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_session.sh"


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_unknown_part_is_refused(tmp_path):
    result = subprocess.run(
        ["bash", str(SCRIPT), "no_such_part"], capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "GRAM_SKIP_ENV": "1", "OUT": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "unknown part 'no_such_part'" in result.stderr
