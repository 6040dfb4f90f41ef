"""Folders and files data is read from (dlcli/data/folders.py): symlinked folders are followed once
(a loop neither multiplies the samples nor hangs), and a FIFO or other non-regular file is exit 3
naming it, in image_folder datasets and in `dlcli infer` inputs. Processes that used to hang run as
real subprocesses with a timeout."""

import io
import os
import subprocess
import sys

import pytest

from dlcli.data.datasets import DATASETS
from dlcli.data.inputs import collect_inputs
from dlcli.errors import DataError
from tests.conftest import REPO
from tests.data.test_datasets import image_folder_config, make_image_folder

PER_CLASS = 6  # make_image_folder's images per class (3 classes)


def folder_with_links(tmp_path):
    """colours/<class>/*.png, plus red/loop -> . (back to its own folder), red/up -> .. (the root),
    and blue/more -> a sibling folder outside the dataset holding 2 more blue images."""
    folder = make_image_folder(tmp_path / "colours")
    extra = tmp_path / "extra_blue"
    extra.mkdir()
    for i in range(2):
        (extra / f"more_{i}.png").write_bytes((folder / "blue" / f"blue_{i}.png").read_bytes())
    os.symlink(".", folder / "red" / "loop")
    os.symlink("..", folder / "red" / "up")
    os.symlink(extra, folder / "blue" / "more")
    return folder


def test_links_back_into_the_tree_are_skipped_and_a_sibling_folder_is_read_once(tmp_path, capsys):
    source = DATASETS.build({"name": "image_folder", "root": str(folder_with_links(tmp_path))}, "train")
    assert source.class_names == ["blue", "green", "red"]
    assert len(source.y) == 3 * PER_CLASS + 2
    assert source.y.tolist().count(0) == PER_CLASS + 2  # the linked sibling folder's images are blue
    assert len(set(source.dataset.paths)) == len(source.dataset.paths)
    note = capsys.readouterr().err
    assert "skipped 2 link(s) to folders already read" in note and "red/loop" in note and "red/up" in note


def test_a_link_inside_one_class_to_another_class_folder_is_not_followed(tmp_path):
    folder = make_image_folder(tmp_path / "colours")
    os.symlink(folder / "red", folder / "blue" / "reds")  # red images would be labelled blue too
    source = DATASETS.build({"name": "image_folder", "root": str(folder)}, "train")
    assert source.y.tolist() == [0] * PER_CLASS + [1] * PER_CLASS + [2] * PER_CLASS


def test_the_order_of_samples_is_torchvisions(tmp_path):
    from torchvision.datasets import ImageFolder

    folder = make_image_folder(tmp_path / "colours")
    (folder / "red" / "sub").mkdir()
    (folder / "red" / "sub" / "a.png").write_bytes((folder / "red" / "red_0.png").read_bytes())
    (folder / "red" / "notes.txt").write_text("not an image")
    source = DATASETS.build({"name": "image_folder", "root": str(folder)}, "train")
    reference = ImageFolder(str(folder))
    assert source.dataset.paths == [path for path, _ in reference.samples]
    assert source.y.tolist() == reference.targets


def test_two_loop_links_do_not_hang_a_process(tmp_path):
    """Two links back up the tree made torchvision's walk grow exponentially: train never started."""
    folder = make_image_folder(tmp_path / "colours")
    os.symlink(".", folder / "red" / "a")
    os.symlink(".", folder / "red" / "b")
    code = ("from dlcli.data.datasets import DATASETS; "
            f"print(len(DATASETS.build({{'name': 'image_folder', 'root': {str(folder)!r}}}, 'train').y))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(3 * PER_CLASS)


def test_infer_folders_follow_links_once(tmp_path, capsys):
    folder = folder_with_links(tmp_path)
    files = collect_inputs([str(folder)])
    assert len(files) == 3 * PER_CLASS + 2 and len(set(files)) == len(files)
    assert files == sorted(files)
    assert "skipped 2 link(s)" in capsys.readouterr().err


def test_non_regular_files_in_an_image_folder_are_data_errors_naming_them(tmp_path):
    folder = make_image_folder(tmp_path / "colours")
    fifo = folder / "green" / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=f"{fifo}: a FIFO \\(named pipe\\), not a regular file"):
        DATASETS.build({"name": "image_folder", "root": str(folder)}, "train")
    os.unlink(fifo)
    os.symlink(tmp_path / "gone.png", fifo)
    with pytest.raises(DataError, match="pipe.png \\(a broken symbolic link\\)"):
        DATASETS.build({"name": "image_folder", "root": str(folder)}, "train")


@pytest.mark.parametrize("make", [os.mkfifo, lambda path: os.symlink("/dev/null", path)], ids=["fifo", "device"])
def test_non_regular_infer_inputs_are_data_errors(tmp_path, make):
    folder = make_image_folder(tmp_path / "colours")
    odd = folder / "red" / "odd.png"
    make(odd)
    for inputs in ([str(odd)], [str(folder)]):
        with pytest.raises(DataError, match="odd.png: a (FIFO|character device).*not a regular file"):
            collect_inputs(inputs)


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory):
    from dlcli.cli.progress import Progress
    from dlcli.config import validate
    from dlcli.training.session import train

    root = tmp_path_factory.mktemp("images")
    config = image_folder_config(make_image_folder(root / "colours"))
    config["train"]["epochs"] = 1
    summary = train(validate(config), str(root / "runs"), None, Progress(1, quiet=True, stream=io.StringIO()))
    return summary["checkpoints"]["last"]


def test_infer_on_a_fifo_exits_3_instead_of_hanging(image_checkpoint, tmp_path, run_cli):
    folder = make_image_folder(tmp_path / "photos")
    fifo = folder / "blue" / "waiting.png"
    os.mkfifo(fifo)  # PIL's open blocked here until a writer came: forever
    result = run_cli("infer", image_checkpoint, folder, "--device", "cpu", timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {fifo}: a FIFO (named pipe), not a regular file"]


def test_class_folders_that_link_up_the_tree_or_repeat_a_class_are_skipped_and_reported(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "colours")
    os.symlink(".", folder / "loop")  # a class that is the root itself
    os.symlink("red", folder / "again")  # a second name for the red class (sorts first, yet red stays red)
    source = DATASETS.build({"name": "image_folder", "root": str(folder)}, "train")
    assert source.class_names == ["blue", "green", "red"] and len(source.y) == 3 * PER_CLASS
    err = capsys.readouterr().err
    assert "skipped 2 link(s)" in err and "again" in err and "loop" in err
