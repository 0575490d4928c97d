/**
 * The report on one image: what `diffuse inspect --json` prints, the studio answers and the
 * text, CSV and HTML faces format. Types only.
 */
import type { OpenMarkReading, OpenWatermarkResult } from '../forensics/invisible-watermark.js';
import type { DetectorProfile } from '../forensics/synthetic.js';
import type { MetadataReport } from '../metadata/read.js';
import type { CredentialReport } from '../provenance/index.js';

/** The report on one image. Field names are stable (docs/INSPECT.md). */
export interface InspectReport {
  file: string;
  /** 'png', 'jpeg', 'webp', ... from the file's first bytes, else what the decoder says. */
  format?: string;
  width?: number;
  height?: number;
  /** Set when the image could not be inspected at all (unreadable file); the other fields are then absent. */
  error?: string;
  credentials?: CredentialReport;
  /** Generation parameters, source type, software and camera the file's metadata declares. */
  metadata?: MetadataReport;
  /** The invisible watermark of the Stable Diffusion code bases (dwtDct). */
  openWatermark?: OpenWatermarkSignal;
  /** Diffuse's watermark: present only when a run was given. */
  watermark?: WatermarkSignal;
  detector?: DetectorSignal;
  verdict?: Verdict;
}

export type WatermarkSignal =
  | { status: 'checked'; detected: boolean; pValue: number; log10P: number; fpr: number; payload?: number; payloadBits?: number; payloadReliability?: number; uncertainBits?: number[]; inversionSteps: number; maxRotation?: number; rotation?: number; geometric?: boolean; found?: string }
  | { status: 'skipped'; reason: string };

/**
 * The Stable Diffusion invisible mark: the best reading (message, convention, matched bits,
 * binomial p-value) with the decision (`found`: the p-value times the readings tried, `correctedP`,
 * below `alpha`).
 */
export type OpenWatermarkSignal = ({ status: 'checked' } & OpenMarkReading & Omit<OpenWatermarkResult, 'best'>) | { status: 'skipped'; reason: string };

export type DetectorSignal =
  | { status: 'checked'; score: number; probability: number; flagged: boolean; profile: DetectorProfile; heatMap?: string }
  | { status: 'skipped'; reason: string };

export interface Verdict {
  /** One line for a person. */
  summary: string;
  /** The signal the summary rests on. */
  restsOn: 'credentials' | 'watermark' | 'novelai-signature' | 'open-watermark' | 'metadata' | 'detector' | 'none';
}

