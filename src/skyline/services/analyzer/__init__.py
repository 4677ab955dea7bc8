"""The analyzer: every metric, every ANALYZER_OPTIMUM_RUN_DURATION, through the algorithm
ensemble (vectorised) and the custom algorithms (isolated), across ANALYZER_PROCESSES worker
processes; anomalies become events on the anomaly stream. See docs/analyzer.md."""

from skyline.analysis.config import AnalyzerConfig, from_settings
from skyline.services.analyzer.run import Analyzer, RunReport
from skyline.services.analyzer.service import run
from skyline.settings import Settings

__all__ = ["Analyzer", "AnalyzerConfig", "RunReport", "check_settings", "from_settings", "run"]


def check_settings(settings: Settings) -> None:
    """SettingsError when the analyzer settings name algorithms that do not exist."""
    from_settings(settings)
