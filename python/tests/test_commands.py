"""The functions that mirror the command (project, lipschitz, attack, train,
prune, compose, export_onnx): the command's results bit for bit on the same
files, and their documented errors."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

import tacit
from conftest import read_rows, write_rows


def cyclic(n=20, p=5, q=3, norm=0.7, seed=0, activation="relu", zero_rows=(), out_scale=1.0,
           in_scale=1.0):
    """A model with cycles in A (||A||_inf = norm), dense B and C."""
    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=0.25, random_state=seed).toarray()
    A[A != 0] = rng.uniform(-1, 1, np.count_nonzero(A))
    A *= norm / np.abs(A).sum(axis=1).max()
    B, C = in_scale * rng.uniform(-1, 1, (n, p)), out_scale * rng.uniform(-1, 1, (q, n))
    b, c = rng.uniform(-0.2, 0.2, n), rng.uniform(-0.2, 0.2, q)
    for i in zero_rows:
        A[i, :] = 0
        B[i, :] = 0
        b[i] = 0
    return tacit.Model(sp.csr_matrix(A), B, C, b=b, c=c, activation=activation)


def saved(model, path):
    model.save(path, format="dir")
    return path


def parameters(model):
    return tacit.Trainable(model).parameters()


def write_labels(path, labels):
    path.write_text("".join(f"{int(v)}\n" for v in labels))


def test_project_matches_the_command(tmp_path, run_cli):
    path = saved(cyclic(norm=1.6, seed=1), tmp_path / "m")
    out = run_cli("project", path, "-o", tmp_path / "p", "--kappa", 0.8, "--json", "-q")
    doc = json.loads(out.stdout)
    projected, report = tacit.project(tacit.load(path), 0.8)
    expected = tacit.load(tmp_path / "p")
    np.testing.assert_array_equal(projected.A.to_scipy().data, expected.A.to_scipy().data)
    np.testing.assert_array_equal(parameters(projected), parameters(expected))
    assert report.rows_changed == doc["rows_changed"] > 0
    assert report.norm_before == doc["norm_before"]
    assert report.norm_after == doc["norm_after"] <= 0.8
    assert report.distance == doc["distance_frobenius"]
    assert tacit.wellposed(projected).certified
    with pytest.raises(ValueError, match="kappa"):
        tacit.project(tacit.load(path), -1.0)


def test_lipschitz_matches_the_command(tmp_path, run_cli):
    path = saved(cyclic(seed=2), tmp_path / "m")
    out = run_cli("lipschitz", path, "--samples", 12, "--seed", 3, "--radius", 0.5,
                  "--json", "-q")
    doc = json.loads(out.stdout)
    L = tacit.lipschitz(tacit.load(path), samples=12, seed=3, radius=0.5)
    np.testing.assert_array_equal(L.upper, [o["upper"] for o in doc["outputs"]])
    np.testing.assert_array_equal(L.lower, [o["lower"] for o in doc["outputs"]])
    np.testing.assert_array_equal(L.argmax, [o["argmax_sample"] for o in doc["outputs"]])
    assert L.method == doc["method"] and L.samples == 12
    assert np.all(L.lower <= L.upper) and np.all(L.lower > 0)


def local_json_arrays(local, key):
    """Per box, per output values of the command's local report (null: +inf)."""
    return np.array([[np.inf if v is None else v for v in box[key]] for box in local["boxes"]])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_local_lipschitz_matches_the_command(tmp_path, run_cli, dtype):
    path = saved(cyclic(seed=2), tmp_path / "m")
    U = np.random.default_rng(11).uniform(-1, 1, (4, 5))
    write_rows(tmp_path / "U.txt", U)
    out = run_cli("lipschitz", path, "--samples", 3, "--seed", 5, "--eps", 0.1, "--input",
                  tmp_path / "U.txt", "--local-samples", 6, "--precision", dtype, "--json",
                  "-q")
    local = json.loads(out.stdout)["local"]
    L = tacit.local_lipschitz(tacit.load(path, dtype=dtype), U, 0.1, samples=6, seed=5)
    assert L.upper.shape == L.lower.shape == (4, 3)
    np.testing.assert_array_equal(L.upper, local_json_arrays(local, "upper"))
    np.testing.assert_array_equal(L.lower, local_json_arrays(local, "lower"))
    np.testing.assert_array_equal(L.mean_upper, local["mean_upper"])
    np.testing.assert_array_equal(L.mean_lower, local["mean_lower"])
    assert L.status == [box["status"] for box in local["boxes"]]
    assert L.bounded == local["bounded"] == 4 and L.samples == 6 and L.eps == 0.1
    # Local bounds bracket the constant and lie within the global upper bound.
    G = tacit.lipschitz(tacit.load(path, dtype=dtype), samples=0)
    assert np.all(L.lower <= L.upper) and np.all(L.lower > 0)
    assert np.all(L.upper <= G.upper * (1 + 1e-12))


def test_local_lipschitz_on_images_matches_the_commands_data(tmp_path, run_cli, data_dir):
    """--data DIR: boxes around the test images clipped to [0, 1], domain=(0, 1)."""
    from test_bounds import FASHION, read_idx_images
    if not FASHION.is_dir():
        pytest.fail(f"{FASHION} is missing: install the Debian package dataset-fashion-mnist",
                    pytrace=False)
    model_path = tmp_path / "mlp.tacit"
    run_cli("import-onnx", data_dir / "fashion" / "fashion_mlp.onnx", "-o", model_path, "-q")
    out = run_cli("lipschitz", model_path, "--samples", 0, "--eps", 0.02, "--data", FASHION,
                  "--limit", 3, "--local-samples", 4, "--seed", 2, "--json", "-q")
    local = json.loads(out.stdout)["local"]
    U = read_idx_images(FASHION / "t10k-images-idx3-ubyte.gz", 3)
    L = tacit.local_lipschitz(tacit.load(model_path), U, 0.02, samples=4, seed=2,
                              domain=(0.0, 1.0))
    np.testing.assert_array_equal(L.upper, local_json_arrays(local, "upper"))
    np.testing.assert_array_equal(L.lower, local_json_arrays(local, "lower"))
    unclipped = tacit.local_lipschitz(tacit.load(model_path), U, 0.02, samples=4, seed=2)
    assert not np.array_equal(unclipped.lower, L.lower)


def test_local_lipschitz_errors_and_unbounded_boxes():
    model = cyclic(seed=2)
    U = np.zeros((2, 5))
    with pytest.raises(ValueError, match="eps"):
        tacit.local_lipschitz(model, U, -0.1)
    with pytest.raises(ValueError, match="samples"):
        tacit.local_lipschitz(model, U, 0.1, samples=-1)
    with pytest.raises(ValueError, match="model expects 5"):
        tacit.local_lipschitz(model, np.zeros((2, 4)), 0.1)
    with pytest.raises(ValueError, match="domain"):
        tacit.local_lipschitz(model, U, 0.1, domain=(1.0, 0.0))
    with pytest.raises(ValueError, match="1-Lipschitz"):
        tacit.local_lipschitz(tacit.Model(sp.csr_matrix((2, 2)), np.eye(2), np.eye(2),
                                          activation="leaky_relu", slope=2.0), np.zeros((1, 2)), 0.1)
    # Not well-posed: no finite local bound, reported per box, not raised.
    L = tacit.local_lipschitz(cyclic(norm=3.0, seed=3), U, 0.1, samples=2)
    assert L.status == ["unbounded", "unbounded"] and L.bounded == 0
    assert np.all(np.isinf(L.upper))


def test_lipschitz_errors():
    with pytest.raises(tacit.NumericalError, match="lambda|certif"):
        tacit.lipschitz(cyclic(norm=3.0, seed=3))
    with pytest.raises(ValueError, match="samples"):
        tacit.lipschitz(cyclic(), samples=-1)


@pytest.mark.parametrize("method, k", [("random", [1, 2]), ("gradient", [1, 3]),
                                       ("lp", [0.5, 2])])
def test_attack_matches_the_command(tmp_path, run_cli, method, k):
    model = cyclic(n=16, p=6, q=3, seed=4)
    path = saved(model, tmp_path / "m")
    U = np.random.default_rng(6).uniform(-1, 1, (12, 6))
    labels = tacit.solve(model, U).outputs.argmax(axis=1)
    labels[:2] = (labels[:2] + 1) % 3  # two misclassified already
    write_rows(tmp_path / "U.txt", U)
    write_labels(tmp_path / "L.txt", labels)
    out = run_cli("attack", path, "--input", tmp_path / "U.txt", "--labels",
                  tmp_path / "L.txt", "--method", method, "--k", ",".join(map(str, k)),
                  "--magnitude", 0.3, "--sigma", 0.2, "--json", "-q")
    doc = json.loads(out.stdout)
    r = tacit.attack(tacit.load(path), U, labels, k=k, method=method, magnitude=0.3,
                     sigma=0.2)
    assert r.count == doc["inputs"] == 12
    assert r.clean_correct == doc["clean_correct"] == 10
    assert list(r.budgets) == [row["k"] for row in doc["results"]]
    assert list(r.correct) == [row["correct"] for row in doc["results"]]
    assert list(r.mean_changed) == [row["mean_changed"] for row in doc["results"]]
    assert all(c <= r.clean_correct for c in r.correct)


def test_attack_errors():
    model = cyclic(n=16, p=6, q=3, seed=4)
    U = np.zeros((2, 6))
    with pytest.raises(ValueError, match="method"):
        tacit.attack(model, U, [0, 1], method="pgd")
    with pytest.raises(ValueError, match="whole numbers"):
        tacit.attack(model, U, [0, 1], k=[1.5])
    with pytest.raises(ValueError, match="label 3"):
        tacit.attack(model, U, [0, 3])
    with pytest.raises(ValueError, match="labels for"):
        tacit.attack(model, U, [0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_train_matches_the_command(tmp_path, run_cli, dtype):
    model = cyclic(n=18, p=4, q=3, norm=0.9, seed=5)
    path = saved(model, tmp_path / "m")
    rng = np.random.default_rng(7)
    U = rng.uniform(-1, 1, (40, 4)).astype(dtype).astype(np.float64)
    labels = rng.integers(0, 3, 40)
    write_rows(tmp_path / "U.txt", U)
    write_labels(tmp_path / "L.txt", labels)
    run_cli("train", path, "--input", tmp_path / "U.txt", "--labels", tmp_path / "L.txt",
            "--epochs", 2, "--batch-size", 8, "--lr", 0.05, "--momentum", 0.9,
            "--kappa", 0.9, "--precision", dtype, "-o", tmp_path / "t.tacit", "-q")
    trained, report = tacit.train(tacit.load(path, dtype=dtype), U.astype(dtype), labels,
                                  epochs=2, batch_size=8, lr=0.05, momentum=0.9, kappa=0.9)
    expected = tacit.load(tmp_path / "t.tacit", dtype=dtype)
    assert trained.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(parameters(trained), parameters(expected))
    assert not np.array_equal(parameters(trained), parameters(tacit.load(path, dtype=dtype)))
    assert len(report["epochs"]) == 2 and report["constraint"] == "inf-norm"
    assert all(e["certified"] for e in report["epochs"])


def test_train_resumed_from_a_checkpoint_gives_the_same_bits(tmp_path, run_cli):
    model = tacit.init_model("implicit:n=8,p=4,q=3,density=0.4,kappa=0.8", dtype="float32")
    rng = np.random.default_rng(12)
    U = rng.uniform(-1, 1, (24, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 24)
    recipe = dict(batch_size=4, optimizer="adam", lr=0.05)
    straight, _ = tacit.train(model, U, labels, epochs=3, **recipe)
    cp = tmp_path / "cp"
    one, first = tacit.train(model, U, labels, epochs=1, checkpoint=cp, **recipe)
    assert (cp / "epoch-0001" / "model.tacit").is_file()
    assert not np.array_equal(parameters(one), parameters(straight))
    resumed, report = tacit.train(model, U, labels, epochs=3, checkpoint=cp, resume=True,
                                  **recipe)
    np.testing.assert_array_equal(parameters(resumed), parameters(straight))
    assert report["first_epoch"] == 2 and [e["epoch"] for e in report["epochs"]] == [2, 3]
    assert (cp / "epoch-0003" / "model.tacit").is_file()
    # The command resumes the same checkpoint to the same model.
    model.save(tmp_path / "init.tacit")
    write_rows(tmp_path / "U.txt", U)
    write_labels(tmp_path / "L.txt", labels)
    run_cli("train", tmp_path / "init.tacit", "-i", tmp_path / "U.txt", "--labels",
            tmp_path / "L.txt", "--batch-size", 4, "--optimizer", "adam", "--lr", 0.05,
            "--precision", "float32", "--epochs", 1, "--checkpoint", tmp_path / "cp2", "-o",
            tmp_path / "one.tacit", "-q")
    run_cli("train", tmp_path / "init.tacit", "-i", tmp_path / "U.txt", "--labels",
            tmp_path / "L.txt", "--batch-size", 4, "--optimizer", "adam", "--lr", 0.05,
            "--precision", "float32", "--epochs", 3, "--checkpoint", tmp_path / "cp2",
            "--resume", "-o", tmp_path / "resumed.tacit", "-q")
    np.testing.assert_array_equal(
        parameters(tacit.load(tmp_path / "resumed.tacit", dtype="float32")),
        parameters(straight))
    # Python resumes the command's checkpoint, too.
    again, _ = tacit.train(model, U, labels, epochs=3, checkpoint=tmp_path / "cp2",
                           resume=True, **recipe)
    np.testing.assert_array_equal(parameters(again), parameters(straight))


def test_train_checkpoint_errors(tmp_path):
    model = tacit.init_model("implicit:n=8,p=4,q=3,density=0.4,kappa=0.8")
    U, labels = np.zeros((4, 4)), [0, 1, 2, 0]
    with pytest.raises(ValueError, match="resume needs checkpoint"):
        tacit.train(model, U, labels, resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="no complete checkpoint") as info:
        tacit.train(model, U, labels, checkpoint=tmp_path / "empty", resume=True)
    assert info.value.filename == str(tmp_path / "empty")
    assert isinstance(info.value, tacit.FileError)
    with pytest.raises(ValueError, match="implicit|spec|n="):
        tacit.init_model("implicit:p=4,q=3")
    with pytest.raises(ValueError):
        tacit.init_model("cnn:1,2")


def bcd_data():
    """The command test's data: 40 samples of 3 inputs, 2 targets."""
    j = np.arange(40)
    U = np.stack([((j * 7) % 11) / 5.0 - 1, ((j * 5) % 13) / 6.0 - 1, ((j * 3) % 7) / 3.0 - 1],
                 axis=1)
    Y = np.stack([np.tanh(U[:, 0] - U[:, 1]), 0.5 * np.tanh(U[:, 2])], axis=1)
    return U, Y


@pytest.mark.parametrize("extra", [{}, {"penalty": "group-lasso", "penalty_lam": 0.05,
                                        "reweight": 1, "layer_eps": 0.5}])
def test_bcd_matches_the_command(tmp_path, run_cli, extra):
    U, Y = bcd_data()
    write_rows(tmp_path / "U.txt", U)
    write_rows(tmp_path / "Y.txt", Y)
    model = tacit.init_model("mlp:3,4,2,phi=tanh", seed=3)
    model.save(tmp_path / "init.tacit")
    args = ["--iterations", 3, "--mu", 0.1]
    if "layer_eps" in extra:
        args += ["--layer-eps", extra["layer_eps"], "--group-lasso", extra["penalty_lam"],
                 "--reweight", extra["reweight"]]
    else:
        args += ["--lambda", 0.1]
    out = run_cli("bcd", tmp_path / "init.tacit", "-i", tmp_path / "U.txt", "--targets",
                  tmp_path / "Y.txt", "--test-input", tmp_path / "U.txt", "--test-targets",
                  tmp_path / "Y.txt", *args, "-o", tmp_path / "m.tacit", "--json")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    done = lines[-1]
    kwargs = dict(extra) if extra else {"lam": 0.1}
    trained, report = tacit.bcd(model, U, Y, test=(U, Y), iterations=3, mu=0.1, **kwargs)
    np.testing.assert_array_equal(parameters(trained),
                                  parameters(tacit.load(tmp_path / "m.tacit")))
    assert report["train_rmse"] == done["train_rmse"] < report["start_train_rmse"]
    assert report["start_train_rmse"] == lines[0]["train_rmse"]
    assert report["test_rmse"] == done["test_rmse"]
    assert report["kappa"] == done["kappa"] and report["lambda_max"] == done["lambda_max"]
    np.testing.assert_array_equal(report["column_norms"], done["column_norms"])
    np.testing.assert_array_equal(report["inputs_read"], done["inputs_read"])
    assert [r["objective"] for r in report["iterations"]] == \
        [line["objective"] for line in lines[1:-1]]
    # The trained model predicts with the reported RMSE.
    rmse = np.sqrt(np.mean((tacit.solve(trained, U).outputs - Y) ** 2))
    assert rmse == pytest.approx(report["train_rmse"], rel=1e-6)


def test_bcd_state_scale_matches_the_command(tmp_path, run_cli):
    U, Y = bcd_data()
    write_rows(tmp_path / "U.txt", U)
    write_rows(tmp_path / "Y.txt", Y)
    model = tacit.init_model("mlp:3,4,2", seed=3)
    model.save(tmp_path / "init.tacit")
    run_cli("bcd", tmp_path / "init.tacit", "-i", tmp_path / "U.txt", "--targets",
            tmp_path / "Y.txt", "--iterations", 3, "--mu", 0.1, "--lambda", 0.1,
            "--state-scale", 0.5, "-o", tmp_path / "m.tacit")
    trained, _ = tacit.bcd(model, U, Y, iterations=3, mu=0.1, lam=0.1, state_scale=0.5)
    np.testing.assert_array_equal(parameters(trained),
                                  parameters(tacit.load(tmp_path / "m.tacit")))
    plain, _ = tacit.bcd(model, U, Y, iterations=3, mu=0.1, lam=0.1)
    assert not np.array_equal(parameters(trained), parameters(plain))


def test_bcd_errors():
    U, Y = bcd_data()
    model = tacit.init_model("mlp:3,4,2,phi=tanh")
    with pytest.raises(tacit.NumericalError, match="kappa = 0.9 exceeds sqrt"):
        tacit.bcd(model, U, Y, lam=1.0, mu=0.25, kappa=0.9)
    with pytest.raises(ValueError, match="-2"):
        tacit.bcd(model, U, Y, penalty="group-lasso", penalty_lam=-2.0)
    with pytest.raises(ValueError, match="sigmoid"):
        tacit.bcd(tacit.init_model("mlp:3,4,2,phi=sigmoid"), U, Y)
    with pytest.raises(ValueError, match="targets for"):
        tacit.bcd(model, U, Y[:10])
    with pytest.raises(ValueError, match="penalty"):
        tacit.bcd(model, U, Y, penalty="l2")
    with pytest.raises(ValueError, match="reweight"):
        tacit.bcd(model, U, Y, reweight=1)
    with pytest.raises(ValueError, match="state"):
        tacit.bcd(model, U, Y, state_scale=1.0)  # tanh states have no free scale
    with pytest.raises(ValueError, match="state_scale"):
        tacit.bcd(tacit.init_model("mlp:3,4,2"), U, Y, state_scale=-1.0)


def test_train_regression_and_validation():
    model = cyclic(n=10, p=3, q=2, seed=8, activation="tanh")
    rng = np.random.default_rng(9)
    U = rng.uniform(-1, 1, (32, 3))
    Y = np.stack([U[:, 0] * 0.5, U[:, 1] - U[:, 2]], axis=1)
    trained, report = tacit.train(model, U, targets=Y, validation=(U, Y), epochs=5,
                                  batch_size=8, lr=0.1, optimizer="adam")
    losses = [e["validation_loss"] for e in report["epochs"]]
    assert losses[-1] < losses[0]
    mse = np.mean((tacit.solve(trained, U).outputs - Y) ** 2)
    assert mse == pytest.approx(losses[-1], rel=1e-6)


def test_train_distillation_matches_the_command(tmp_path, run_cli):
    rng = np.random.default_rng(21)
    U = rng.uniform(-1, 1, (30, 4))
    labels = rng.integers(0, 3, 30)
    teacher = tacit.init_model("mlp:4,12,3", seed=5)
    student = tacit.init_model("mlp:4,6,3", seed=2)
    soft = tacit.solve(teacher, U).outputs
    recipe = dict(epochs=2, batch_size=8, lr=0.1)
    taught, report = tacit.train(student, U, labels, teacher=soft, distill=0.7,
                                 temperature=2.0, **recipe)
    plain, _ = tacit.train(student, U, labels, **recipe)
    assert not np.array_equal(parameters(taught), parameters(plain))
    teacher.save(tmp_path / "teacher.tacit")
    student.save(tmp_path / "student.tacit")
    write_rows(tmp_path / "U.txt", U)
    write_labels(tmp_path / "L.txt", labels)
    run_cli("train", tmp_path / "student.tacit", "-i", tmp_path / "U.txt", "--labels",
            tmp_path / "L.txt", "--epochs", 2, "--batch-size", 8, "--lr", 0.1, "--teacher",
            tmp_path / "teacher.tacit", "--distill", 0.7, "--temperature", 2, "-o",
            tmp_path / "t.tacit", "-q")
    np.testing.assert_array_equal(parameters(taught),
                                  parameters(tacit.load(tmp_path / "t.tacit")))
    with pytest.raises(ValueError, match="distill"):
        tacit.train(student, U, labels, teacher=soft, **recipe)
    with pytest.raises(ValueError, match="teacher"):
        tacit.train(student, U, labels, distill=0.5, **recipe)
    with pytest.raises(ValueError, match="teacher"):
        tacit.train(student, U, labels, teacher=soft[:20], distill=0.5, **recipe)
    with pytest.raises(ValueError, match="weight 1.5"):
        tacit.train(student, U, labels, teacher=soft, distill=1.5, **recipe)


def test_train_errors():
    model = cyclic(n=10, p=3, q=2, seed=8)
    U = np.zeros((4, 3))
    with pytest.raises(ValueError, match="labels .* or targets"):
        tacit.train(model, U)
    with pytest.raises(ValueError, match="label|outside"):
        tacit.train(model, U, [0, 1, 2, 1])
    with pytest.raises(ValueError, match="optimizer|sgd"):
        tacit.train(model, U, [0, 1, 0, 1], optimizer="lbfgs")
    with pytest.raises(ValueError, match="kappa"):
        tacit.train(model, U, [0, 1, 0, 1], kappa=1.5)
    # A forward solve that does not converge stops training: a numerical error.
    A = sp.csr_matrix(np.array([[0.0, 1.5], [1.5, 0.0]]))
    loop = tacit.Model(A, np.eye(2), np.eye(2), activation="identity")
    with pytest.raises(tacit.NumericalError, match="epoch 1"):
        tacit.train(loop, np.ones((4, 2)), [0, 1, 0, 1], constraint="none",
                    max_iterations=50)


def test_prune_matches_the_command(tmp_path, run_cli):
    model = cyclic(n=20, p=5, q=3, seed=10, zero_rows=(2, 7, 11))
    path = saved(model, tmp_path / "m")
    out = run_cli("prune", path, "-o", tmp_path / "p.tacit", "--json", "-q")
    doc = json.loads(out.stdout)
    pruned, info = tacit.prune(tacit.load(path))
    expected = tacit.load(tmp_path / "p.tacit")
    assert list(info["kept_states"]) == doc["kept_states"]
    assert 2 not in info["kept_states"] and pruned.states == 17
    assert info["before"] == doc["before"] and info["after"] == doc["after"]
    np.testing.assert_array_equal(parameters(pruned), parameters(expected))
    U = np.random.default_rng(1).uniform(-1, 1, (9, 5))
    np.testing.assert_array_equal(tacit.solve(pruned, U).outputs,
                                  tacit.solve(info["masked"], U).outputs)
    with pytest.raises(ValueError, match="threshold"):
        tacit.prune(model, threshold=-1)
    nothing = tacit.Model(sp.csr_matrix((3, 3)), np.zeros((3, 2)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="state"):
        tacit.prune(nothing)


@pytest.mark.parametrize("kind", ["cascade", "parallel", "feedback"])
def test_compose_matches_the_command(tmp_path, run_cli, kind):
    first = cyclic(n=12, p=3, q=3, seed=11)
    second = cyclic(n=8, p=3, q=3, norm=0.3, seed=12, out_scale=0.05,
                    in_scale=0.05)  # a weak loop: the feedback model converges
    a, b = saved(first, tmp_path / "a"), saved(second, tmp_path / "b")
    run_cli("compose", kind, a, b, "-o", tmp_path / "c.tacit", "-q")
    composed = tacit.compose(kind, tacit.load(a), tacit.load(b))
    expected = tacit.load(tmp_path / "c.tacit")
    assert (composed.states, composed.inputs, composed.outputs) == \
        (expected.states, expected.inputs, expected.outputs)
    assert composed.blocks == expected.blocks
    U = np.random.default_rng(2).uniform(-1, 1, (6, 3))
    write_rows(tmp_path / "U.txt", U)
    run_cli("solve", tmp_path / "c.tacit", "-i", tmp_path / "U.txt", "-o",
            tmp_path / "Y.txt", "-q")
    np.testing.assert_array_equal(tacit.solve(composed, U).outputs,
                                  read_rows(tmp_path / "Y.txt"))


def test_compose_errors():
    m = cyclic(n=12, p=3, q=3, seed=11)
    with pytest.raises(ValueError, match="expected cascade"):
        tacit.compose("series", m, m)
    with pytest.raises(ValueError, match="float32"):
        tacit.compose("cascade", m.astype("float32"), m)
    with pytest.raises(ValueError):
        tacit.compose("cascade", m, cyclic(n=5, p=4, q=2, seed=1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_export_onnx_writes_the_commands_file(tmp_path, run_cli, data_dir, dtype):
    source = data_dir / "onnx" / "tiny_cnn.onnx"
    run_cli("export-onnx", source, "-o", tmp_path / "cli.onnx", "--precision", dtype, "-q")
    tacit.export_onnx(tacit.import_onnx(source, dtype=dtype), tmp_path / "py.onnx")
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()


def test_export_onnx_errors(tmp_path, data_dir):
    with pytest.raises(NotImplementedError, match="csr|CSR|cycl"):
        tacit.export_onnx(cyclic(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    net = tacit.import_onnx(data_dir / "onnx" / "tiny_cnn.onnx")
    with pytest.raises(OSError, match="no_such_dir"):
        tacit.export_onnx(net, tmp_path / "no_such_dir" / "r.onnx")
