"""What bench/gpu.sh carries to a GPU machine that reaches no package registry and no model hub.

That machine has Python 3.12 with torch and transformers, and receives the working tree plus what is
carried beside it, at most 64 MiB in all. What it lacks for copydesk's engine comes as wheels
downloaded here; the 7B-class model is built there from its config, with the embedded model's
tokenizer carried here (gzipped: a few MiB less). Subcommands:

    fetch   download the wheels (the versions installed here, the ones copydesk is tested with)
            and save the tokenizer into the carry folder
    check   list what would travel, each carried file with its size; exit 1 if something is
            missing or it does not fit
    verify  on the GPU machine, after the wheels are installed: the carried versions are the ones
            imported, and the device is there

    python bench/gpu_carry.py fetch|check|verify [--carry DIR] [--device cuda]
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/gpu_carry.py` from anywhere
    sys.path.insert(0, str(ROOT))

LIMIT_BYTES = 64 * 1024 * 1024  # the device tool's limit on the working tree plus everything carried
MIB = 1024 * 1024
DEFAULT_CARRY = ROOT / ".gpu-carry"
WHEELS, TOKENIZER = "wheels", "tokenizer"
# The machine's platform. pip matches each manylinux tag exactly: bitsandbytes' wheel has 2_24, others older ones.
PIP_PLATFORM = ("--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--no-deps",
                *(f"--platform={tag}_x86_64" for tag in ("manylinux_2_28", "manylinux_2_24", "manylinux_2_17", "manylinux2014")))


@dataclass(frozen=True)
class Wheel:
    distribution: str
    why: str


CARRIED = (
    Wheel("bitsandbytes", "the 4-bit NF4 path; the image has none (about 43 MB: kernels for every CUDA and ROCm)"),
    Wheel("transformers", "pyproject.toml bounds copydesk to the version its speed-ups are tested with; "
                          "the image has another (5.17 when last read)"),
    Wheel("regex", "transformers 5.24 refuses regex older than 2025.10.22 at import, and the image's was never read; "
                   "generation/platforms imports it too"),
)
# copydesk's runtime dependencies that the GPU machine's image holds already (its package list, 2026-11).
IN_IMAGE = frozenset({
    "torch", "accelerate", "aiohttp", "numpy", "pyarrow", "tqdm", "matplotlib", "click", "prometheus-client",
})


def runtime_dependencies() -> list[str]:
    """The distribution names of pyproject.toml's runtime dependencies, extras dropped."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = []
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0]
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        names.append(name.strip().lower())
    return names


def describe_dependencies() -> list[str]:
    carried = {wheel.distribution for wheel in CARRIED}
    lines = []
    for name in runtime_dependencies():
        where = ("carried" if name in carried else "in the image" if name in IN_IMAGE
                 else "not carried: the GPU bench never imports it (int4 loads on the CPU only)" if name == "torchao"
                 else "not carried: the GPU bench never imports it (the bot, storage or the embedded model's conversion do)")
        lines.append(f"  {name}: {where}")
    return lines


def installed_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        raise SystemExit(f"{distribution} is not installed here; run this with the project's venv "
                         "(PYTHON=.venv/bin/python bench/gpu.sh --prepare)") from None


def wheel_file(carry: Path, wheel: Wheel) -> Path | None:
    """The carried wheel of the version installed here, if it was fetched."""
    wanted = f"{wheel.distribution.replace('-', '_')}-{installed_version(wheel.distribution)}-"
    found = sorted(path for path in (carry / WHEELS).glob("*.whl") if path.name.startswith(wanted))
    return found[0] if found else None


def fetch(carry: Path, cache_dir: Path) -> None:
    (carry / WHEELS).mkdir(parents=True, exist_ok=True)
    for stale in (carry / WHEELS).glob("*.whl"):  # two versions of one package stop the whole install there
        if not any(stale == wheel_file(carry, wheel) for wheel in CARRIED):
            stale.unlink()
    for wheel in CARRIED:
        if wheel_file(carry, wheel) is None:
            pinned = f"{wheel.distribution}=={installed_version(wheel.distribution)}"
            print(f"downloading {pinned}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", *PIP_PLATFORM, "-d", str(carry / WHEELS),
                            pinned], check=True)
    if not (carry / TOKENIZER).is_dir():
        save_tokenizer(carry / TOKENIZER, cache_dir)


def save_tokenizer(target: Path, cache_dir: Path) -> None:
    """The embedded model's tokenizer and chat template, written whole or not at all."""
    from transformers import AutoTokenizer

    from generation import resolve_model

    source = resolve_model("", cache_dir)
    staging = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=target.parent))
    try:
        AutoTokenizer.from_pretrained(source.location, local_files_only=True).save_pretrained(staging)
        vocabulary = staging / "tokenizer.json"
        with vocabulary.open("rb") as plain, gzip.open(staging / "tokenizer.json.gz", "wb") as packed:
            shutil.copyfileobj(plain, packed)
        vocabulary.unlink()
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def travelling_tree() -> list[Path]:
    """Tracked files and untracked ones git does not ignore: what the device tool sends besides the carry."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode()
    return [ROOT / name for name in sorted(set(listed.split("\0"))) if name and os.path.lexists(ROOT / name)]


def is_ignored(path: Path) -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(path)]).returncode == 0


def check(carry: Path) -> list[str]:
    """Print what would travel; return the reasons it cannot (empty when it is ready)."""
    problems = []
    if not carry.is_dir():
        return [f"{carry} does not exist: run `bench/gpu.sh --prepare` first"]
    if not carry.is_relative_to(ROOT):
        return [f"{carry} is outside the repository {ROOT}: only paths inside it can be carried"]
    if not is_ignored(carry):
        problems.append(f"{carry.name}/ is not ignored by git: it would travel twice, and carry takes ignored paths only")
    for wheel in CARRIED:
        if wheel_file(carry, wheel) is None:
            problems.append(f"no {wheel.distribution} {installed_version(wheel.distribution)} wheel in {carry / WHEELS}: "
                            "run `bench/gpu.sh --prepare`")
    if not (carry / TOKENIZER / "tokenizer.json.gz").is_file():
        problems.append(f"no tokenizer in {carry / TOKENIZER}: run `bench/gpu.sh --prepare`")
    carried = sorted(path for path in carry.rglob("*") if path.is_file())
    carried_bytes = sum(path.stat().st_size for path in carried)
    print(f"carried ({carry.name}/, {len(carried)} files, {carried_bytes / MIB:.1f} MiB):")
    for path in carried:
        print(f"  {path.stat().st_size / MIB:8.2f} MiB  {path.relative_to(carry)}")
    for wheel in CARRIED:
        print(f"  why {wheel.distribution}: {wheel.why}")
    print("copydesk's runtime dependencies:", *describe_dependencies(), sep="\n")
    tree = travelling_tree()
    tree_bytes = sum(path.lstat().st_size for path in tree)
    print(f"working tree (tracked, and untracked not ignored): {len(tree)} files, {tree_bytes / MIB:.2f} MiB")
    total = carried_bytes + tree_bytes
    spare = LIMIT_BYTES - total
    if spare < 0:
        problems.append(f"{total / MIB:.2f} MiB would travel, {-spare / MIB:.2f} MiB over the limit of "
                        f"{LIMIT_BYTES / MIB:.0f} MiB")
    else:
        print(f"total {total / MIB:.2f} MiB of {LIMIT_BYTES / MIB:.0f} MiB: fits, {spare / MIB:.2f} MiB to spare")
    return problems


def verify(device: str) -> None:
    """Fail in seconds, not after the model is built, if the install did not take or the GPU is absent."""
    import bitsandbytes
    import torch

    for wheel in CARRIED:
        imported = importlib.import_module(wheel.distribution).__version__  # the distributions are named as imported
        carried = version(wheel.distribution)  # the dist-info first on sys.path: the carried one
        if imported != carried:
            raise SystemExit(f"{wheel.distribution} {imported} was imported, not the carried {carried}: "
                             "is the install folder first on PYTHONPATH?")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device on this machine")
    # One NF4 product: bitsandbytes finds its native library for this torch's CUDA only when first used.
    weight, state = bitsandbytes.functional.quantize_4bit(
        torch.randn(256, 256, device=device, dtype=torch.bfloat16), quant_type="nf4")
    product = bitsandbytes.matmul_4bit(torch.randn(4, 256, device=device, dtype=torch.bfloat16), weight.t(), state)
    if not torch.isfinite(product).all():
        raise SystemExit(f"bitsandbytes' NF4 product on {device} gave non-finite values")
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    carried = " · ".join(f"{wheel.distribution} {version(wheel.distribution)}" for wheel in CARRIED)
    print(f"python {sys.version.split()[0]} · torch {torch.__version__} · {carried} · {where}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("fetch", "check", "verify"))
    parser.add_argument("--carry", type=Path, default=DEFAULT_CARRY, help="the carried folder (default .gpu-carry)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="verify: the device to expect")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("COPYDESK_CACHE_DIR", "~/.cache/copydesk")),
                        help="fetch: where the embedded model is converted (default $COPYDESK_CACHE_DIR or ~/.cache/copydesk)")
    args = parser.parse_args()
    carry = args.carry.resolve()
    if args.command == "fetch":
        fetch(carry, args.cache_dir.expanduser())
    elif args.command == "check":
        problems = check(carry)
        if problems:
            raise SystemExit("not ready:\n" + "\n".join(f"  {problem}" for problem in problems))
        print(f"ready: on the GPU machine, run bench/gpu.sh from the repository's root with {carry.relative_to(ROOT)}/ carried")
    else:
        verify(args.device)


if __name__ == "__main__":
    main()
