"""benchmarks/gpu_session.sh: the prepared GPU script parses, runs a branch for every part it lists, and refuses a part it does not know."""
import re
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


def test_every_listed_part_has_a_branch():
    """A part named in PARTS but missing from run_part's case would pack nothing and say nothing."""
    text = SCRIPT.read_text()
    parts = re.search(r'^PARTS="([^"]+)"', text, re.MULTILINE).group(1).split()
    branches = set(re.findall(r"^    ([a-z0-9_]+)\)$", text, re.MULTILINE))
    assert "nqueens10_small" in parts
    assert set(parts) <= branches, f"parts without a branch in run_part: {set(parts) - branches}"
