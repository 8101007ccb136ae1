"""Runs collective.recipe.backup's own Recipe (its __init__ and install) on
buildout sections given as JSON on stdin, with stand-ins for zc.buildout and
zc.recipe.egg, and prints what it derived as JSON: the storage dict that its
generated scripts get, the option values, the script names it creates, or
the UserError it raised. A test oracle for src/engine/deploy/buildout.ts.
Usage: RECIPE_SRC=<folder with collective/> python3 recipe-derive.py PART < sections.json"""
import json, os, sys, types

sys.path.insert(0, os.environ['RECIPE_SRC'])


class UserError(Exception):
    pass


zc = types.ModuleType('zc')
zc.__path__ = []
buildout_mod = types.ModuleType('zc.buildout')
buildout_mod.UserError = UserError
easy = types.ModuleType('zc.buildout.easy_install')
easy.scripts = lambda reqs, ws, exe, dest, arguments=None, initialization=None: [r[0] for r in reqs]
buildout_mod.easy_install = easy
recipe_mod = types.ModuleType('zc.recipe')
egg_mod = types.ModuleType('zc.recipe.egg')


class Egg:
    def __init__(self, *args):
        pass

    def working_set(self, extra=()):
        return [], None


egg_mod.Egg = Egg
recipe_mod.egg = egg_mod
zc.buildout, zc.recipe = buildout_mod, recipe_mod
sys.modules.update({'zc': zc, 'zc.buildout': buildout_mod, 'zc.buildout.easy_install': easy, 'zc.recipe': recipe_mod, 'zc.recipe.egg': egg_mod})

from collective.recipe.backup import Recipe  # noqa: E402

part = sys.argv[1]
buildout = json.load(sys.stdin)
buildout['buildout'].setdefault('python', 'buildout')
buildout['buildout'].setdefault('executable', sys.executable)
seen = {}
orig = Recipe.generate_scripts


def generate_scripts(self, storage):
    seen['storage'] = storage
    return orig(self, storage)


Recipe.generate_scripts = generate_scripts
try:
    options = dict(buildout[part])
    r = Recipe(buildout, part, options)
    scripts = r.install()
    print(json.dumps({'storage': seen['storage'], 'options': options, 'scripts': scripts}))
except UserError as e:
    print(json.dumps({'error': ' '.join(str(a) for a in e.args)}))
