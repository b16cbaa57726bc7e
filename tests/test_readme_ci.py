"""README's set-up and test commands are what .ci/run runs; install.sh's extras
exist."""
import ast
import os
import os.path as osp
import re

from helpers import REPO as ROOT


def _read(*path):
    with open(osp.join(ROOT, *path), encoding='utf-8') as f:
        return f.read()


def _bash_block_after(text, heading):
    section = text.split(heading, 1)[1]
    block = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def _ci_commands():
    return [
        line.strip() for line in _read('.ci', 'run').splitlines()
        if line.strip() and not line.lstrip().startswith('#')
    ]


def test_ci_runs_readmes_setup_and_test_commands():
    readme = _read('README.md')
    setup = _bash_block_after(readme, '## Set up')
    tests = _bash_block_after(readme, '## Run the tests')
    assert setup[-1] == 'bash tools/install.sh'
    assert setup[0].startswith('git clone')
    assert tests == ['python -m pytest tests lab/tests -q']
    ci = _ci_commands()
    assert setup[-1] in ci and tests[0] in ci
    assert ci.index(setup[-1]) < ci.index(tests[0])
    assert os.access(osp.join(ROOT, '.ci', 'run'), os.X_OK)
    # the main job command of the README
    demo = _bash_block_after(readme, '## Train the Fashion-MNIST demo')
    assert demo == [
        'python tools/train.py '
        'configs/fashion_mnist/nfnet-demo_1xb128_fashion-mnist.py'
    ]


def test_install_script_extras_are_defined_in_setup_py():
    script = _read('tools', 'install.sh')
    extras = re.search(r'^DEFAULT_EXTRAS="([^"]*)"', script,
                       re.M).group(1).split(',')
    tree = ast.parse(_read('setup.py'))
    defined = next(
        ast.literal_eval(node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(
            getattr(t, 'id', None) == 'EXTRAS' for t in node.targets))
    assert extras and set(extras) <= set(defined), set(extras) - set(defined)
    assert defined['mmcv-lite'] == ['mmcv-lite==2.1.0']
