"""llama.cpp's `llama-server`, built once into the user's cache: a peer the engine bench measures
copydesk against, never a dependency of copydesk.

The sources are the llama.cpp tree that PyPI's `llama-cpp-python` source distribution carries
(`vendor/llama.cpp`), pinned so every run measures the same server. The build takes about
8 minutes of 2 cores and runs niced, so the machine stays usable.

    .venv/bin/python bench/llama_server.py [--cache-dir DIR]     # build (or find) it, print its path
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/llama_server.py` from anywhere
    sys.path.insert(0, str(ROOT))

from support.cpu import cpu_has  # noqa: E402

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
BUILD_TOOLS = ("cmake", "c++")


class BuildFailed(RuntimeError):
    """A tool is missing, the download failed or the build failed; the message says which and how to fix it."""


def server_path(cache_dir: Path, version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    return cache_dir / "llama.cpp" / version / "bin" / "llama-server"


def build_llama_server(cache_dir: Path, version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """The cached `llama-server`, built first if absent; the binary appears whole or not at all."""
    target = server_path(cache_dir, version)
    if target.exists():
        return target
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
    if missing:
        raise BuildFailed(f"building llama-server needs {', '.join(missing)}: apt-get install cmake g++ "
                          "(or pip install cmake)")
    with tempfile.TemporaryDirectory(prefix="llama-cpp-build-") as folder:
        work = Path(folder)
        source = _unpack_vendored_sources(_download_sdist(version, work), work)
        build = work / "build"
        _run(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
              # Static libraries: the binary alone is copied out of the build tree into the cache.
              "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF"], "configure")
        _run(["cmake", "--build", str(build), "--config", "Release", "--target", "llama-server", "-j2"], "build")
        built = build / "bin" / "llama-server"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(built, partial)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(target)
    return target


def _download_sdist(version: str, folder: Path) -> Path:
    _run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
          "--dest", str(folder), f"llama-cpp-python=={version}"], "download")
    archives = sorted(folder.glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        raise BuildFailed(f"pip download left no llama_cpp_python sdist in {folder}")
    return archives[0]


def _unpack_vendored_sources(archive: Path, folder: Path) -> Path:
    """Only `vendor/llama.cpp` of the sdist; the Python binding around it is not needed."""
    with tarfile.open(archive) as sdist:
        members = [m for m in sdist.getmembers() if "/vendor/llama.cpp/" in f"{m.name}/"]
        if not members:
            raise BuildFailed(f"{archive.name} carries no vendor/llama.cpp")
        sdist.extractall(folder, members=members, filter="data")
    (source,) = folder.glob("llama_cpp_python-*/vendor/llama.cpp")
    return source


def _run(command: list[str], step: str) -> None:
    """Niced, so the build leaves the machine usable; output goes to stderr, like the bench's progress."""
    result = subprocess.run(["nice", "-n", "19", *command], stdout=sys.stderr, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise BuildFailed(f"llama.cpp {step} failed (exit {result.returncode}): {' '.join(command)}")


def workaround_flags() -> list[str]:
    """Where the CPU has AMX, this build's AMX path (its weights repacked for AMX tiles) segfaults in
    `ggml_backend_amx_mul_mat` on the first product of the embedded model: such weights stay as loaded."""
    return ["--no-repack"] if cpu_has("amx_int8") else []


def run_flags(*, slots: int, threads: int) -> list[str]:
    """The flags that shape how llama.cpp runs, as the bench's table names them: `slots` parallel
    sequences, continuous batching, `threads` threads."""
    return ["-np", str(slots), "-cb", "-t", str(threads), *workaround_flags()]


def llama_server_command(binary: Path, gguf: Path, port: int, *, slots: int, context_per_slot: int,
                         threads: int) -> list[str]:
    """`llama-server` on loopback with `run_flags` and `context_per_slot` tokens of context per
    sequence; it answers GET /health once the model is loaded."""
    return [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
            *run_flags(slots=slots, threads=threads), "-c", str(slots * context_per_slot)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build llama.cpp's llama-server once into the cache; print its path.")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("COPYDESK_CACHE_DIR", "~/.cache/copydesk")))
    args = parser.parse_args(argv)
    try:
        print(build_llama_server(args.cache_dir.expanduser()))
    except BuildFailed as failure:
        sys.exit(f"error: {failure}")


if __name__ == "__main__":
    main()
