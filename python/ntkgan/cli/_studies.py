"""``ntkgan collapse`` and ``ntkgan damping``: the studies of Durr et al.'s effective GAN dynamics
(:mod:`ntkgan.studies`)."""

from __future__ import annotations

from ntkgan._validation import parse_floats
from ntkgan.cli._options import add_command, add_study_options, add_values_option
from ntkgan.studies._common import TASKS_DIR
from ntkgan.studies._transition import transition_text
from ntkgan.studies.collapse import DEFAULT_RATIOS, DEFAULT_SETTINGS, SETTINGS, collapse_study, setting_curve
from ntkgan.studies.damping import ARCHS, DEFAULT_LAMBDAS, damping_study

__all__ = ["add_collapse_command", "add_damping_command"]


def _resumed_note(result) -> str:
    """`` (k of n runs read from OUT/tasks, finished before)`` when the study resumed, else nothing."""
    if not result.resumed:
        return ""
    return f" ({result.resumed} of {len(result.runs)} runs read from {result.out_dir / TASKS_DIR}, finished before)"



def _cluster(args) -> dict:
    """The study options every study takes: where it runs, and whether it shows a progress bar."""
    return {"workers": args.workers, "scheduler": args.scheduler, "progress": not args.quiet}


def _collapse_cli(args) -> int:
    """mode-collapse study: kernel-coupled particles on a Gaussian mixture, swept over g2/g1

    Kernel-coupled particles (two-number kernel, g1 = 1, g2 = r) on a K-mode Gaussian mixture, for each
    discriminator setting, ratio and seed; writes the diversity over time, the final diversity per
    ratio, the transition points (first r where the mean final diversity exceeds log(K)/2) and plots to
    --out.
    """
    ratios = parse_floats(args.ratios, "--ratios") if args.ratios else DEFAULT_RATIOS
    settings = (
        [s.strip() for s in args.settings.split(",") if s.strip()] if args.settings else DEFAULT_SETTINGS
    )
    result = collapse_study(args.out, ratios=ratios, settings=settings, seeds=args.seeds, steps=args.steps,
                            k=args.modes, n=args.particles, eta=args.eta, record_every=args.record_every,
                            final_window=args.final_window, **_cluster(args))
    print(f"collapse study: {len(result.runs)} runs in {result.wall_time:.1f} s -> {result.out_dir}"
          + _resumed_note(result))
    for name, t in result.transitions.items():
        text = transition_text(t, *setting_curve(result.summary, name), result.threshold)
        print(f"  transition g2/g1 ({name}): {text}")
    return 0


def add_collapse_command(subparsers) -> None:
    """Register ``ntkgan collapse``."""
    p = add_command(subparsers, "collapse", _collapse_cli)
    add_values_option(p, "--ratios", "g2/g1 values in [0, 1)", DEFAULT_RATIOS)
    p.add_argument("--settings", default=None,
                   help=f"comma-separated discriminator settings among {', '.join(SETTINGS)} "
                        f"(default: {','.join(DEFAULT_SETTINGS)})")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2000, help="generator steps per run (default: %(default)s)")
    p.add_argument("--modes", type=int, default=3, help="number of mixture modes K (default: %(default)s)")
    p.add_argument("--particles", type=int, default=60, help="particles N = target points (default: %(default)s)")
    p.add_argument("--eta", type=float, default=1.0, help="particle step eta (default: %(default)s)")
    p.add_argument("--record-every", type=int, default=10,
                   help="steps between diversity records (default: %(default)s)")
    p.add_argument("--final-window", type=float, default=0.2,
                   help="final diversity = mean over this last fraction of the run (default: %(default)s)")
    add_study_options(p)


def _damping_cli(args) -> int:
    """critical-damping study: persistent discriminator with a gradient penalty, swept over lambda

    Particles chase a translated copy of themselves under a persistent finite discriminator trained on
    the IPM loss plus lambda * mean |grad_x f|^2; for each lambda and seed, records the mean error and
    the discriminator output over time, fits the convergence rate, and compares it with the linearised
    (damped-oscillator) model. Writes CSVs, a summary and plots to --out.
    """
    lambdas = parse_floats(args.lambdas, "--lambdas") if args.lambdas else DEFAULT_LAMBDAS
    result = damping_study(args.out, lambdas=lambdas, seeds=args.seeds, steps=args.steps, arch=args.arch,
                           width=args.width, n=args.particles, shift=args.shift, eta=args.eta, d_lr=args.d_lr,
                           d_steps=args.d_steps, g2=args.g2, tol=args.tol, sinkhorn_every=args.sinkhorn_every,
                           **_cluster(args))
    m = result.model
    print(f"damping study: {len(result.runs)} runs in {result.wall_time:.1f} s -> {result.out_dir}"
          + _resumed_note(result))
    print(
        f"  fastest lambda on the grid: {result.fastest_lambda:g}; linearised model: lambda_c = "
        f"{m['lambda_c']:.3f}, discrete optimum {m['lambda_best']:.3f}"
    )
    return 0


def add_damping_command(subparsers) -> None:
    """Register ``ntkgan damping``."""
    p = add_command(subparsers, "damping", _damping_cli)
    add_values_option(p, "--lambdas", "penalty strengths >= 0", DEFAULT_LAMBDAS)
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="generator steps per run (default: %(default)s)")
    p.add_argument("--arch", default="linear", choices=sorted(ARCHS),
                   help="discriminator architecture (default: %(default)s)")
    p.add_argument("--width", type=int, default=128, help="discriminator width (default: %(default)s)")
    p.add_argument("--particles", type=int, default=50, help="particles N (default: %(default)s)")
    p.add_argument("--shift", type=float, default=3.0, help="target offset along e_1 (default: %(default)s)")
    p.add_argument("--eta", type=float, default=5.0, help="particle step eta (default: %(default)s)")
    p.add_argument("--d-lr", dest="d_lr", type=float, default=0.01, help="discriminator step (default: %(default)s)")
    p.add_argument("--d-steps", type=int, default=10,
                   help="discriminator steps per generator step (default: %(default)s)")
    p.add_argument("--g2", type=float, default=0.0, help="off-diagonal coupling, g1 = 1 (default: %(default)s)")
    p.add_argument("--tol", type=float, default=1e-3, help="end of the rate fit, relative (default: %(default)s)")
    p.add_argument("--sinkhorn-every", type=int, default=20,
                   help="steps between Sinkhorn divergences, 0 = none (default: %(default)s)")
    add_study_options(p)
