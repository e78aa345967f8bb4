/** The parsed model of a project page: what Airlock keeps, filters and re-renders. */
export interface PyFile {
  filename: string;
  /** Absolute upstream URL (resolved against the page URL). Never shown to clients. */
  url: string;
  /** Lower-case algorithm → lower-case hex. */
  hashes: Record<string, string>;
  requiresPython?: string;
  /** false, or the reason ('' when yanked without a reason). */
  yanked: false | string;
  /** Hashes of the PEP 658 metadata file, when the upstream advertises one with hashes; true when advertised without. */
  coreMetadata?: Record<string, string> | true;
  size?: number;
  uploadTime?: string;
}

export interface PyProject {
  /** Normalised name. */
  name: string;
  files: PyFile[];
}

/** A project page after policy: the files a client may see, each with its version. */
export interface FilteredProject {
  name: string;
  /** `attested`: its rule requires attested, so Airlock serves its verified provenance (PEP 740). */
  files: (PyFile & { version: string; attested?: boolean })[];
  versions: string[];
}
