"""Video keyframes with Debian's ffmpeg, hashed like images (audio is out of scope).

Only the intra-coded frames (keyframes) are decoded (`-skip_frame nokey`), at
most `limit` of them, scaled to at most 512 px, as PNG bytes through a pipe;
ffmpeg runs with a time limit and no network protocols.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from factbridge.errors import InputError

PNG_END = b"IEND\xaeB`\x82"


def keyframes(path: Path, limit: int = 8, where: str = "", timeout: float = 60.0) -> list[bytes]:
    if shutil.which("ffmpeg") is None:
        raise InputError("video keyframes need Debian's ffmpeg (apt-get install ffmpeg)", source=where)
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-protocol_whitelist", "file,pipe", "-skip_frame", "nokey", "-i", str(path),
        "-an", "-fps_mode", "passthrough", "-vf", "scale='min(512,iw)':-2", "-frames:v", str(limit),
        "-f", "image2pipe", "-vcodec", "png", "pipe:1",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"video: ffmpeg took longer than {timeout:g} s", source=where) from exc
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no frame"]
        raise InputError(f"video could not be read: {reason[0][:200]}", source=where)
    frames = [part + PNG_END for part in done.stdout.split(PNG_END) if part]
    return frames[:limit]
