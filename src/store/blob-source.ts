// Read access to an image's blobs by digest, whatever holds them: a local OCI layout, a registry
// (registry/blob-source.ts) or containerd's content store (containerd/content-source.ts).

/** Where an image's manifests, configs and layers are read from: a local store or a registry. */
export interface BlobSource {
  /** `mediaType` tells a registry source whether to ask for a manifest or a blob. */
  get(digest: string, mediaType?: string): Promise<Uint8Array>;
  exists(digest: string, mediaType?: string): Promise<boolean>;
  createReadStream(digest: string): Promise<AsyncIterable<Uint8Array>>;
}
