from pathlib import Path

from click.testing import CliRunner

from harness.cli import main


def test_doctor_reports_backends_and_says_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-home" / "hub"))
    checkpoint = tmp_path / "m2f.pth"
    checkpoint.write_bytes(b"0" * 2048)
    result = CliRunner().invoke(main, ["doctor", "--detector", str(checkpoint),
                                       "--hf-detector", str(tmp_path / "no-such-model")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("[ok  ] torch: torch 2.14.1")
    assert "hub: offline (HF_HUB_OFFLINE set)" in result.output  # tests run offline
    assert any(line.startswith("[ok  ] backend mmdet: mmdet 3.3.0") and "mmcv.ops ok" in line for line in lines)
    assert any(line.startswith("[ok  ] mmdet weights:") and str(checkpoint) in line for line in lines)
    hf = next(line for line in lines if "backend hf" in line)
    assert hf.startswith("[MISS]") and "no-such-model" in hf
    clip = next(line for line in lines if "colour classifier" in line)
    assert clip.startswith("[MISS]") and "timm/vit_large_patch14_clip_224.openai" in clip
    assert "--clip-weights" in clip
    plugins = [line for line in lines if " generator " in line or " verifier " in line]
    assert [line.split(":")[0] for line in plugins] == (["[MISS] generator showo"] * 3 + ["[MISS] generator janus"]
                                                        + ["[MISS] verifier orm/prm"])
    assert "`hf download showlab/show-o`" in plugins[0] and "`hf download showlab/magvitv2`" in plugins[1]
    assert "`hf download llava-hf/llava-onevision-qwen2-7b-ov-hf`" in plugins[4] and "--verifier-param" in plugins[4]
