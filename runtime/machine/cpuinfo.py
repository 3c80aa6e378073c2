"""The CPU this process runs on: model name and the SIMD flags that matter for int8 and fp32 speed."""

import platform
from dataclasses import dataclass

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


@dataclass
class CpuInfo:
    """Model name and which of FLAGS are present."""

    model: str
    flags: dict[str, bool]

    @property
    def vnni(self) -> bool:
        """Whether int8 dot products run without the u8*s8 saturation of plain AVX2."""
        return self.flags.get("avx512_vnni", False) or self.flags.get("avx_vnni", False)


def cpu_info(path="/proc/cpuinfo") -> CpuInfo:
    """Read /proc/cpuinfo (Linux); elsewhere only the platform's processor name."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open(path):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return CpuInfo(model, {f: f in flags for f in FLAGS})
