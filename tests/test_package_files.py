"""Files named ``package:relative/path`` resolve inside installed packages, and nowhere else."""

import pytest

from lightning_auffusion.package_files import is_package_file, resolve_package_file


def test_resolves_a_file_of_an_installed_package():
    path = resolve_package_file("lightning_auffusion:package_files.py")
    assert path.is_file() and path.name == "package_files.py"


@pytest.mark.parametrize("source", ["runs/x.ckpt", "/abs/path.pt", "org/name", "C:/weights.pt", "https://host/x.pt"])
def test_paths_hub_ids_and_urls_are_not_package_files(source):
    assert not is_package_file(source)


def test_missing_package_and_missing_file_give_one_clear_error():
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_package_file("no_such_package_xyz:data/w.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_package_file("lightning_auffusion:no/such/file.pt")


def test_a_path_cannot_leave_the_package_folder():
    with pytest.raises(ValueError, match="leaves the package folder"):
        resolve_package_file("lightning_auffusion:../../etc/passwd")
