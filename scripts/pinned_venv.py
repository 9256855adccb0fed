"""Runs a test script under a venv of its own that holds one pinned PyPI package (the stock client
it drives), creating the venv on first use. Standard library only."""
import os
import pathlib
import subprocess
import sys


def reexec_in_venv(venv, package, version, label):
    """Re-runs the calling script with `venv`'s Python, installing `package`==`version` first if
    needed; returns at once when already running there."""
    python = venv / "bin" / "python"
    if pathlib.Path(sys.prefix).resolve() == venv.resolve():
        return
    check = [str(python), "-c", f"import importlib.metadata as m; assert m.version('{package}') == '{version}'"]
    if not python.exists() or subprocess.run(check, stderr=subprocess.DEVNULL).returncode != 0:
        print(f"{label}: installing {package} {version} (PyPI) into {venv.name}/", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"{package}=={version}"], check=True)
    script = os.path.abspath(sys.modules["__main__"].__file__)
    os.execv(str(python), [str(python), script, *sys.argv[1:]])
