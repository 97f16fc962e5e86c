"""``dgnam import-generator``: the published DeePSiM fc6 generator (synthetic tensors of the port's names
and shapes) into a dgnam generator file."""

import torch

from dgnam import load_generator
from dgnam.cli.main import main as cli_main


def test_cli_round_trip_and_never_overwrites(tmp_path, port_state_dict, capsys):
    src = tmp_path / "upconvGAN_fc6.pt"
    torch.save({f"G.{k}": v for k, v in port_state_dict.items()}, src)  # upconvGAN keeps its net under .G
    bounds = tmp_path / "fc6.txt"
    bounds.write_text(" ".join(str(8 + i % 9) for i in range(4096)) + "\n")
    out = tmp_path / "fc6_generator.pt"
    assert cli_main(["import-generator", str(src), str(out), "--bounds", str(bounds)]) == 0
    G = load_generator(out)
    assert G.output_space == "caffe_bgr" and G.image_size == 256
    for name, layer in [*G.fc.items(), *G.convs.items()]:
        assert torch.equal(layer.weight, port_state_dict[f"{name}.weight"])
    assert torch.equal(G.code_upper_bound, torch.tensor([8.0 + i % 9 for i in range(4096)]))
    assert G.metadata["imported_from"] == str(src)
    written = out.read_bytes()
    capsys.readouterr()
    assert cli_main(["import-generator", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err
    assert out.read_bytes() == written
